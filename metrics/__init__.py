"""Quality metrics for generators: FID, KID, precision/recall, Inception Score, perceptual path length.

`metric_main` is the registry (`calc_metric`, `report_metric`, `check_metrics_available`); `metric_utils` holds
what every metric shares (options, detector files, feature statistics, real-image statistics cache); each other
module computes one metric family from feature statistics.
"""
