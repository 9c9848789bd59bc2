-- 0011_snapshot_fillfactor: portfolio_snapshots gets fillfactor 90, so a
-- claim (a new row, ~100 bytes) is never put into the last crumbs of free
-- space of a page full of finished snapshots.
-- Why (measured, docs/scaling.md): with fillfactor 100 the free space map
-- offers every page that has room for one more ~100-byte claim; in a table
-- with history, nearly every page of finished snapshots has such a crumb, so
-- a chunk's 5,000 claims land on ~5,000 different old pages, and after a
-- checkpoint each first change of a page writes a full-page image: at 100k
-- portfolios x 20 dates, the claim of one chunk wrote 45 MB of WAL (5,387
-- full-page images). With fillfactor 90 an insert needs 10% of the page free
-- besides the row, so claims go to fresh (or vacuumed-empty) pages, densely:
-- 4.8 MB (388 full-page images). Measured at 95: 14 MB, and the finalized
-- versions then scatter too (1,284 full-page images).
-- Cost: pages filled by inserts and by the finalize's new versions keep 10%
-- free (about 10% more heap for new rows).
-- ALTER TABLE ... SET (fillfactor) only changes the table's options
-- (SHARE UPDATE EXCLUSIVE: reads and writes go on; no rewrite, no scan) and
-- affects only where new rows go: existing pages are not repacked (a VACUUM
-- FULL or pg_repack would, and is not needed).
-- depends: 0010_positions_covering_index

SET lock_timeout = '5s';
SET statement_timeout = '60s';

ALTER TABLE portfolio_snapshots SET (fillfactor = 90);
