-- The seed's public.tasks table (widened with more PostgreSQL types) and the publication Debezium reads.
CREATE TYPE priority AS ENUM ('low', 'medium', 'high');
CREATE TABLE public.tasks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title       text NOT NULL,
    completed   boolean NOT NULL DEFAULT false,
    due_date    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamp NOT NULL DEFAULT now(),
    estimate    numeric(10, 2),
    points      numeric,
    prio        priority DEFAULT 'medium',
    tags        text[],
    meta        jsonb,
    remind_at   time,
    attachment  bytea,
    streak      integer,
    score       double precision,
    -- Widened beyond the seed so every mapped type is exercised (README: Debezium types).
    spent       interval,
    cost        money,
    small       smallint,
    big         bigint,
    ratio       real,
    code        varchar(16),
    grade       char(2),
    alarm       timetz,
    stamp_ms    timestamp(3),
    clock_ms    time(3)
);
ALTER TABLE public.tasks REPLICA IDENTITY FULL;
CREATE PUBLICATION debezium_publication FOR TABLE public.tasks;
