"""pts's HTTP edge: who may do what (:mod:`pts.http.access`) and how errors are answered
(:mod:`pts.http.errors`), for the plugin's routes and the Durable Streams app alike.

Nothing is imported here, so that importing one part runs no other.
"""
