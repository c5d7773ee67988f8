-- A change that reads a merchant and writes it back (a PATCH's merge, a
-- rotation) holds its row until commit, so two at once run one after the other
-- instead of the second writing back what the first had changed.
SELECT id FROM notify_merchants WHERE id = $1 FOR UPDATE
