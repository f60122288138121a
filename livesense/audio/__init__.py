"""livesense.audio"""
