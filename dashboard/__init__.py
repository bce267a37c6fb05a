"""The live dashboard (``make dashboard``): market and pipeline views over ``lakehouse.reading``.

Read-only and loopback-only. Imports ``lakehouse``; nothing in ``lakehouse`` imports it.
"""
