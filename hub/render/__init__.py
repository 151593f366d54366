"""Render service core: volumes assembled from a series, MPR/MIP kernels (numpy/numba on the CPU,
PyOpenGL where a GL context can be made), windowing and image encoding. No web code here."""
