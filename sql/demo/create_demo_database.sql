-- create_demo_database: the demo's scratch database (the name is fixed here
-- and in pnl/demo.py: DEMO_DATABASE).
--
-- No parameters. Returns nothing.
CREATE DATABASE pnl_demo;
