-- 0002_engine (PostgreSQL): what the orchestration engine needs beyond 0001.
--
-- runs.stage: index of the workflow's agent a run is at (0 for a run of a
-- single agent).  A stage's input is the previous stage's output, kept in
-- runs.output until the stage is done.
--
-- runs.reserved_*: the budget reservation of the step in flight, held in
-- usage.reserved_* of (reserved_day, reserved_agent_id) (the day it was taken, which may not be
-- the day it is settled).  Kept on the run so that a crash between reserve
-- and checkpoint neither leaks the reservation nor takes it twice: the
-- next worker finds it and uses it.
--
-- agents.step_reserve_*: the most one step of this agent may spend, as the
-- agent declares it; NULL means the engine's default
-- (engine.step_reserve_tokens / step_reserve_micro_usd).
ALTER TABLE runs ADD COLUMN stage integer NOT NULL DEFAULT 0 CHECK (stage >= 0);
ALTER TABLE runs ADD COLUMN reserved_day text;
ALTER TABLE runs ADD COLUMN reserved_agent_id uuid;
ALTER TABLE runs ADD COLUMN reserved_tokens bigint NOT NULL DEFAULT 0 CHECK (reserved_tokens >= 0);
ALTER TABLE runs ADD COLUMN reserved_micro_usd bigint NOT NULL DEFAULT 0 CHECK (reserved_micro_usd >= 0);
ALTER TABLE agents ADD COLUMN step_reserve_tokens bigint CHECK (step_reserve_tokens >= 0);
ALTER TABLE agents ADD COLUMN step_reserve_micro_usd bigint CHECK (step_reserve_micro_usd >= 0);
-- Finished runs, oldest first, for pruning their checkpoints.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
-- The dashboard's and vitals' step figures over a time window.
CREATE INDEX steps_tenant_finished ON steps (tenant_id, finished_at);
