-- 0001_baseline rollback: drops the legacy tables and ALL their data.
-- Only ever useful on an empty or scratch database. Take a dump first.
-- Statements are in the reverse order of 0001_baseline.sql.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS portfolio_snapshots;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS capital_flows;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS market_prices;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS positions;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS portfolios;
