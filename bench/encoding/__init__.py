"""The encoding benchmark: document-encoding throughput through `Encoder.embed`, padding waste,
and the forward's GFLOP/s against a timed torch.mm (`python -m bench.encoding`).

`measure` holds the measurements and their arithmetic, `report` renders the record.
"""
