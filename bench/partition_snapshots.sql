-- partition_snapshots: for `bench/run.py --partition-snapshots` only (docs/scaling.md
-- section 2, measured): replace the EMPTY portfolio_snapshots of the bench's
-- scratch database with the same table partitioned by RANGE (snapshot_date),
-- so that section 2's claim (a date's probes and inserts touch one month's
-- small indexes, so the depth of history stops mattering) can be measured
-- with pnl's unchanged statements. Not a migration (it drops and recreates
-- the table; see section 2 for the migration path on a real database).
-- What partitioning forces, on PostgreSQL 15:
--   the primary key becomes (id, snapshot_date): it must contain the partition key;
--   id gets a sequence default: identity columns on partitioned tables need 17;
--   fillfactor (0011) is set on each partition (bench/partition_months.sql).
-- The unique key (portfolio_id, snapshot_date), ON CONFLICT's arbiter, is unchanged.
-- 0013's triggers go with the dropped table and are made again on the new one
-- (PostgreSQL 15 allows both statement-level kinds on a partitioned table; the
-- row-level one is cloned to every partition). They see statements on the
-- parent only: not a partition's own DELETE or TRUNCATE, a DETACH or DROP, nor
-- an UPDATE that moves a row to another partition (docs/scaling.md section 2).
-- No DEFAULT partition: with one, PostgreSQL cannot read the partitions in
-- date order (an ordered Append) for "the latest snapshot before D ... LIMIT 1"
-- and uses a MergeAppend, which starts a scan of every partition per probe
-- (measured: 8x the index block reads, one date at 250 prior dates 1.8x
-- slower than without partitions). A date outside the months made fails.
-- No parameters. Returns nothing. Refuses (division by zero) unless the table is empty.
SELECT 1 / (CASE WHEN EXISTS (SELECT FROM portfolio_snapshots) THEN 0 ELSE 1 END);
ALTER TABLE portfolio_snapshots RENAME TO portfolio_snapshots_unpartitioned;
CREATE TABLE portfolio_snapshots
    (LIKE portfolio_snapshots_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS)
    PARTITION BY RANGE (snapshot_date);
DROP TABLE portfolio_snapshots_unpartitioned;
CREATE SEQUENCE portfolio_snapshots_id_seq OWNED BY portfolio_snapshots.id;
ALTER TABLE portfolio_snapshots ALTER COLUMN id SET DEFAULT nextval('portfolio_snapshots_id_seq');
ALTER TABLE portfolio_snapshots
    ADD CONSTRAINT pk_portfolio_snapshots PRIMARY KEY (id, snapshot_date),
    ADD CONSTRAINT fk_portfolio_snapshots_portfolio FOREIGN KEY (portfolio_id) REFERENCES portfolios (id),
    ADD CONSTRAINT uq_portfolio_snapshot_date UNIQUE (portfolio_id, snapshot_date);
CREATE INDEX ix_portfolio_snapshots_incomplete
    ON portfolio_snapshots (portfolio_id, snapshot_date) WHERE NOT is_complete;
CREATE TRIGGER trg_snapshots_delete_forgets_equity_as_of
    AFTER DELETE ON portfolio_snapshots REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_equity_as_of_forget_removed();
CREATE TRIGGER trg_snapshots_update_forgets_equity_as_of
    AFTER UPDATE OF is_complete, snapshot_date, portfolio_id ON portfolio_snapshots FOR EACH ROW
    WHEN (OLD.is_complete AND (NEW.is_complete IS NOT TRUE OR NEW.snapshot_date IS DISTINCT FROM OLD.snapshot_date
                               OR NEW.portfolio_id IS DISTINCT FROM OLD.portfolio_id))
    EXECUTE FUNCTION pnl_equity_as_of_forget_changed();
CREATE TRIGGER trg_snapshots_truncate_forgets_equity_as_of
    AFTER TRUNCATE ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION pnl_equity_as_of_forget_all();
