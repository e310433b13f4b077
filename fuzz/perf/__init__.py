"""Speed and memory: of the allocator against its peers, and of hakfuzz itself.

- :mod:`.bench`: the ``hakfuzz bench`` engines (larson, the malloc
  workloads, the differential executor) and their report;
- :mod:`.larson`: larson under any allocator, and the stability protocol;
- :mod:`.model_speed`: the model's ops/s and memory (a script).
"""
