"""livesense.buffers"""
