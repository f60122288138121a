"""livesense.models"""
