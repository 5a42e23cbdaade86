"""Analyses of trained members: training diagnostics, loss landscapes, restart statistics."""
