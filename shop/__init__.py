"""Products, cards, flash-sale inventory in Redis, orders in SQL, payments, refunds, commissions."""
