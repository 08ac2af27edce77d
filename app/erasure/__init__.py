"""A renter erasing their own data (`DELETE /api/v1/principals/me`)."""
