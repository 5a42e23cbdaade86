"""Where members run: the device mesh and member sharding, multi-host start-up, CPU devices.

Importing this package imports no JAX (`cpu_devices` must run before JAX starts)."""
