"""serve stage: the web site, the JSON API and the Subsonic API over an archive or mirror."""
