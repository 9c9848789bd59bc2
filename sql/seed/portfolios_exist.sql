-- portfolios_exist: whether the database already has portfolios (seed fills
-- only an empty database).
--
-- No parameters.
-- Returns one row: present (bool)
SELECT EXISTS (SELECT 1 FROM portfolios) AS present;
