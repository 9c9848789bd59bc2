-- refix_marks: the first step of a repair of valuation marks: each given mark
-- is archived as it is (to_jsonb, in valuation_mark_repair_audit) and fixed
-- again from market_prices (the latest close <= its date), in one statement,
-- but only while it still differs and the current close is usable (> 0). The
-- repair then replays the affected portfolios with the batch's finalize, which
-- reads the new marks. Inside the repair's transaction.
--
-- $1 rescue run id (bigint)   $2 mark dates (date[])   $3 symbols (text[], aligned)
-- $4 the repair's batch run id (bigint; recorded on the mark)
-- Returns one row per re-fixed mark: mark_date, symbol, old_close, new_close, new_price_date
WITH wanted AS (
    SELECT vm.mark_date, vm.symbol, to_jsonb(vm) AS old_row, vm.close_price AS old_close,
           cur.close_price AS new_close, cur.price_date AS new_price_date
      FROM unnest($2::date[], $3::text[]) AS m(mark_date, symbol)
      JOIN valuation_marks AS vm ON vm.mark_date = m.mark_date AND vm.symbol = m.symbol
      JOIN LATERAL (
            SELECT mp.close_price, mp.price_date
              FROM market_prices AS mp
             WHERE mp.symbol = vm.symbol AND mp.price_date <= vm.mark_date
             ORDER BY mp.price_date DESC
             LIMIT 1) AS cur ON true
     WHERE cur.close_price > 0
       AND (cur.price_date <> vm.price_date OR cur.close_price <> vm.close_price)
       FOR UPDATE OF vm
),
archived AS (
    INSERT INTO valuation_mark_repair_audit (rescue_run_id, mark_date, symbol, old_row, new_close, new_price_date)
    SELECT $1::bigint, w.mark_date, w.symbol, w.old_row, w.new_close, w.new_price_date
      FROM wanted AS w
    RETURNING mark_date, symbol
)
UPDATE valuation_marks AS vm
   SET close_price = w.new_close,
       price_date = w.new_price_date,
       batch_run_id = $4::bigint,
       fixed_at = now()
  FROM wanted AS w
 WHERE vm.mark_date = w.mark_date AND vm.symbol = w.symbol
   AND (vm.mark_date, vm.symbol) IN (SELECT a.mark_date, a.symbol FROM archived AS a)
RETURNING vm.mark_date, vm.symbol, w.old_close, vm.close_price AS new_close, vm.price_date AS new_price_date;
