"""The lottery (抽選): rounds, applications and the draw (draw.py: deterministic and published)."""
