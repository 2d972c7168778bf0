"""Example genbench plug-in package: importing :mod:`genbench_plugin_example.model` (genbench does
it through the ``genbench.models`` entry point) registers the ``linear-ae`` model."""
