"""The YAML presets, installed as ``synthaug.configs`` (package data) so they work without the repository.

The folder stays at the top of the repository (``configs/bench``, ``configs/generators``,
``configs/gallery.yaml``); ``setup.py`` maps it to this package. Find and read them with
``synthaug.presets`` (``list_presets``, ``preset_path``) rather than by path.
"""
