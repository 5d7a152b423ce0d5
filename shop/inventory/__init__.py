"""Flash-sale inventory: pure rules (``rules``) and the Redis adapter running the Lua scripts (``store``)."""
