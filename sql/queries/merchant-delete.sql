DELETE FROM notify_merchants WHERE id = $1 RETURNING id
