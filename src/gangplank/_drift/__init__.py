"""The drift monitor's internals: nothing here is public API (import from :mod:`gangplank`).

One concern a module: ``validation`` checks user arrays, ``batch`` makes them
one validated batch, ``window`` adds batches up, ``binning``/``profile`` hold
the reference, ``drift_statistics``/``comparison`` compare a window with it,
``calibration``/``count_null`` set the thresholds, ``sequential``/
``accuracy_charts`` are the CUSUM charts, ``recent_windows`` the k-of-m
counts, ``scoring_ids`` the ids remembered for feedback, ``reference_file``
the file format, ``families`` the Prometheus families, ``settings`` a
monitor's validated settings, ``tracker`` the single-threaded window state,
``worker`` the queue and thread around it.
"""
