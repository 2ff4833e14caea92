"""Statistics for claims: thin layers over scipy, statsmodels and sklearn. No torch, no file I/O."""
