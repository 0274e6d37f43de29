"""Published versions: the typed manifest (model, manifest, schema), the catalog on disk
(catalog, rows), the metadata files made from a manifest (card, croissant, pictures,
summary), the shard layout, and upload (remote)."""
