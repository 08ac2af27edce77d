"""The browser console on /console: server-rendered pages for bot developers and admins, over
the same services as the API, behind a server-side session exchanged for an API key."""
