return { workers = 4,, }
