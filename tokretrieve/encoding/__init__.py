"""Encoding: text -> tokens -> hidden states -> embedding -> PC1 adjustment -> projection -> bag.

Everything that needs a model lives here (torch, transformers); nothing here knows an index.
`Encoder` is the entry point; `models` loads checkpoints, `pooling` holds the embedding methods,
`projection` the PC1 adjustment and the LM-head projection to bags, `vocabulary` variant merging,
`alignment` and `analysis` the paper's measurements (and the λ calibration), `checkpoint`
resumable corpus encoding, `parallel` batches side by side on a CPU, `tokenizer` the saved
tokenizer alone (tokenized queries, readable tokens).

The package imports none of its modules itself: tokenized queries need `tokenizer`, `literal`
and `vocabulary` only, and would otherwise pay for torch (`tokretrieve.Encoder` is the encoder).
"""
