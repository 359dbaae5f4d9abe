"""The synthetic signing benchmark, a layer above ``data/`` and ``extract/`` (it renders videos and describes
them with the proxy RGB encoder of :mod:`seds.extract.proxy_rgb`): ``signing.py`` the generator (pseudo-words,
signers, sentences, keypoints, rendered frames), ``body.py`` the body / face / hand model it animates,
``store.py`` a feature store of it, ``recordings.py`` long recordings with known sentence boundaries."""
