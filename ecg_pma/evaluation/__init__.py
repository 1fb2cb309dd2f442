"""
Where a model stands: deterministic record embeddings (`embeddings`), the benchmark suites and their tasks
(`suites`), linear probes on the cached embeddings per task, head, label fraction and seed (`protocols`), bootstrap
confidence intervals and paired differences (`statistics`), the pre-training leakage guard (`leakage`) and the
reports (`report`). `ecg-pma embed` and `ecg-pma benchmark` run them.
"""
