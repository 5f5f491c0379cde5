-- 0002_engine (SQLite), down.  DROP COLUMN needs SQLite >= 3.35 (we
-- require 3.37); an index on a column must go before the column.
DROP INDEX steps_tenant_finished;
DROP INDEX runs_finished;
ALTER TABLE agents DROP COLUMN step_reserve_micro_usd;
ALTER TABLE agents DROP COLUMN step_reserve_tokens;
ALTER TABLE runs DROP COLUMN reserved_micro_usd;
ALTER TABLE runs DROP COLUMN reserved_tokens;
ALTER TABLE runs DROP COLUMN reserved_agent_id;
ALTER TABLE runs DROP COLUMN reserved_day;
ALTER TABLE runs DROP COLUMN stage;
