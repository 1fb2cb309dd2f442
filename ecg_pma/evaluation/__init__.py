"""
Where a model stands: deterministic record embeddings (`embeddings`), the benchmark suites and their tasks
(`suites`), linear probes on the cached embeddings per task, head, label fraction and seed (`protocols`), bootstrap
confidence intervals and paired differences (`statistics`), per-class F1 and the PhysioNet 2021 challenge metric on
the same resamples (`suite_metrics`, `challenge_metric`), the pre-training leakage and patient-overlap guards
(`leakage`) and the reports (`report`, `suite_report`). `ecg-pma embed` and `ecg-pma benchmark` run them.
"""
