"""Sale inventory: pure rules (``rules``), what a buy does per sale type (``sale_types``), the records the
scripts keep (``records``) and the Redis adapter running the Lua scripts (``store``)."""
