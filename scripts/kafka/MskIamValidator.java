package kps;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerExtensionsValidatorCallback;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerToken;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallback;

/**
 * The test broker's MSKIAM listener: the server side of SASL OAUTHBEARER that takes AWS MSK IAM
 * tokens (a base64url SigV4-presigned kafka-cluster:Connect URL). The check itself is done by the
 * verifier whose URL is in the file named by the JAAS option verifierUrlFile (scripts/aws_stub.py
 * /msk-verify, which knows the credentials it handed out): it answers 200 with
 * "principal lifetimeMs startMs" for a token it accepts, anything else refuses it.
 */
public class MskIamValidator implements AuthenticateCallbackHandler {
    private Path urlFile;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    @Override
    public void configure(Map<String, ?> configs, String mechanism, List<AppConfigurationEntry> entries) {
        urlFile = Path.of((String) entries.get(0).getOptions().get("verifierUrlFile"));
    }

    @Override
    public void handle(Callback[] callbacks) throws UnsupportedCallbackException {
        for (Callback cb : callbacks) {
            if (cb instanceof OAuthBearerValidatorCallback v) {
                validate(v);
            } else if (cb instanceof OAuthBearerExtensionsValidatorCallback e) {
                e.inputExtensions().map().keySet().forEach(e::valid);
            } else {
                throw new UnsupportedCallbackException(cb);
            }
        }
    }

    private void validate(OAuthBearerValidatorCallback v) {
        String token = v.tokenValue();
        try {
            String base = Files.readString(urlFile).trim();
            URI uri = URI.create(base + "?token=" + URLEncoder.encode(token, StandardCharsets.UTF_8));
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(5)).build(),
                    HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) {
                v.error("invalid_token", null, null);
                return;
            }
            String[] f = r.body().trim().split(" ");
            String principal = f[0];
            long lifetime = Long.parseLong(f[1]);
            long start = Long.parseLong(f[2]);
            v.token(new OAuthBearerToken() {
                public String value() { return token; }
                public Set<String> scope() { return Set.of(); }
                public long lifetimeMs() { return lifetime; }
                public String principalName() { return principal; }
                public Long startTimeMs() { return start; }
            });
        } catch (Exception e) {
            v.error("invalid_token", null, null);
        }
    }

    @Override
    public void close() {}
}
