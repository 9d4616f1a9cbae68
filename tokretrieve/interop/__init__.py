"""The bags leave the process: exports to other engines, and bags from other models imported.

    index -> bags (document_bags, integer_queries) -> keys (TokenKeys) -> a route:
        jsonl (Anserini JsonVectorCollection, Seismic), lucene (Pyserini impact index),
        milvus (a SPARSE_FLOAT_VECTOR collection), opensearch (rank_features bulk files)
    each route checked against tokretrieve's own ranking (agreement.compare);
    vectors from elsewhere -> imported.index_from_vectors -> an index.

Engines that need optional packages (pyserini, pymilvus) are imported only by their modules.
"""
