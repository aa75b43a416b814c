"""Small data sets shipped with nndsl (generated or converted once, never downloaded)."""
