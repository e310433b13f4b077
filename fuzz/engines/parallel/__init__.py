"""The parallel engine: Programs run on real pthreads by the C driver.

- ``wire``: a Program flattened to the driver's fixed records;
- ``generators``: seeded workloads of mixed glibc/hakmem pointers;
- ``runner``: the driver as a child process, its result turned into a
  verdict (and a finding on a crash or a failed oracle);
- ``stress``: the campaign behind ``hakfuzz stress``.
"""
