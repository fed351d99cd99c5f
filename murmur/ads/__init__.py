"""murmur's ads side: audiences from posts, a campaign store, pCTR, the auction and pacing, the ad server.

Modules: :mod:`vectors` (user/post vectors behind one interface), :mod:`audiences`, :mod:`store`
(campaigns in SQLite or PostgreSQL through SQLAlchemy), :mod:`pctr` (click models and their
evaluation), :mod:`auction` (ranking, generalised second price), :mod:`pacing`, :mod:`safety`
(brand safety), :mod:`server` (ad selection), :mod:`simulate` (the A/B test), :mod:`router` (HTTP).
The demo world's advertisers and click model live in :mod:`murmur.world.ads`.
"""
