-- drop_demo_database: drop the demo's scratch database, if any, closing its
-- connections (WITH (FORCE), PostgreSQL 13+). Only ever this one name.
--
-- No parameters. Returns nothing.
DROP DATABASE IF EXISTS pnl_demo WITH (FORCE);
