"""The IR core: the IR, its op table, verifier, text form, builder, interpreter, rewrites and pass manager."""
