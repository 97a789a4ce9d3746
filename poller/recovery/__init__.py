"""Getting records back: redrive (discarded records and dead letters go to the function again)
and replay (a stream mapping's checkpoints move). Used by ``poller redrive`` and ``poller replay``."""
