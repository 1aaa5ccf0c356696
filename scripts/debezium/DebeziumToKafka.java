// Runs the real Debezium PostgreSQL connector in Debezium's embedded engine with Confluent's
// AvroConverter for keys and values (schemas registered in the given registry) and sends every
// change event to Kafka on the topic Debezium names (topic.prefix.schema.table), creating the
// topic first (tansu does not auto-create). The bytes are what Kafka Connect would produce.
//
// Configuration by environment: PG_HOST, PG_PORT, PG_USER, PG_PASSWORD, PG_DB, BOOTSTRAP,
// REGISTRY_URL, OFFSETS_FILE, TOPIC_PREFIX (supabase-habit), TOPIC_PARTITIONS (1), SLOT
// (debezium_tasks), SNAPSHOT_MODE (initial).
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Avro;
import io.debezium.engine.format.KeyValueChangeEventFormat;

import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class DebeziumToKafka {
    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = env("BOOTSTRAP", "127.0.0.1:9092");
        String registry = env("REGISTRY_URL", "http://127.0.0.1:8081");
        int partitions = Integer.parseInt(env("TOPIC_PARTITIONS", "1"));

        Properties p = new Properties();
        p.setProperty("name", "supabase-postgres-cdc");
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
        p.setProperty("offset.storage.file.filename", env("OFFSETS_FILE", "/tmp/dbz-offsets.dat"));
        p.setProperty("offset.flush.interval.ms", "1000");
        p.setProperty("database.hostname", env("PG_HOST", "127.0.0.1"));
        p.setProperty("database.port", env("PG_PORT", "55432"));
        p.setProperty("database.user", env("PG_USER", "postgres"));
        p.setProperty("database.password", env("PG_PASSWORD", "postgres"));
        p.setProperty("database.dbname", env("PG_DB", "postgres"));
        p.setProperty("topic.prefix", env("TOPIC_PREFIX", "supabase-habit"));
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("publication.name", "debezium_publication");
        p.setProperty("publication.autocreate.mode", "disabled");
        p.setProperty("slot.name", env("SLOT", "debezium_tasks"));
        p.setProperty("table.include.list", "public.tasks");
        p.setProperty("snapshot.mode", env("SNAPSHOT_MODE", "initial"));
        p.setProperty("tombstones.on.delete", "true");
        p.setProperty("key.converter.schema.registry.url", registry);
        p.setProperty("value.converter.schema.registry.url", registry);

        Properties kp = new Properties();
        kp.setProperty("bootstrap.servers", bootstrap);
        kp.setProperty("enable.idempotence", "false");
        kp.setProperty("acks", "all");
        KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(kp, new ByteArraySerializer(), new ByteArraySerializer());
        Admin admin = Admin.create(kp);
        Set<String> topics = new HashSet<>();

        DebeziumEngine<ChangeEvent<byte[], byte[]>> engine = DebeziumEngine
                .create(KeyValueChangeEventFormat.of(Avro.class, Avro.class))
                .using(p)
                .notifying((List<ChangeEvent<byte[], byte[]>> records, DebeziumEngine.RecordCommitter<ChangeEvent<byte[], byte[]>> committer) -> {
                    for (ChangeEvent<byte[], byte[]> r : records) {
                        String topic = r.destination();
                        if (topics.add(topic)) {
                            try {
                                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
                            } catch (ExecutionException e) {
                                if (!(e.getCause() instanceof TopicExistsException)) {
                                    throw new RuntimeException("create topic " + topic, e);
                                }
                            }
                        }
                        try {
                            producer.send(new ProducerRecord<>(topic, r.key(), r.value())).get();
                        } catch (ExecutionException e) {
                            throw new RuntimeException("send to " + topic, e);
                        }
                        committer.markProcessed(r);
                    }
                    committer.markBatchFinished();
                    System.out.println("forwarded " + records.size() + " events");
                })
                .using((success, message, error) -> {
                    System.out.println("engine stopped: success=" + success + " " + message);
                    if (error != null) {
                        error.printStackTrace();
                    }
                })
                .build();

        ExecutorService executor = Executors.newSingleThreadExecutor();
        executor.execute(engine);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                engine.close();
                executor.shutdown();
                executor.awaitTermination(10, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            }
            producer.close();
            admin.close();
        }));
        System.out.println("debezium engine started");
        executor.awaitTermination(Long.MAX_VALUE, TimeUnit.DAYS);
    }
}
