"""The pure unit of work: the program, a member's training state and step, the chunked loop,
the vmapped ensemble and structural variants. Imports no file I/O and no reporting."""
