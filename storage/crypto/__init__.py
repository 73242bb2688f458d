"""Key material and sealing: the chunk format, the master keys, the key store, receipts."""
