"""livesense.video"""
