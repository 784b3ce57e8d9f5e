"""Finance reports in admin: energy, carbon and cost by tenant, model, provider and day, read from DailyUsage.

`queries` holds the plain functions (one aggregate query per section), `forms` validates the filters, `export`
streams the CSVs, `views` and `admin` only wire them into the admin site.
"""
