"""Report writers: Allure results for lifecycle phases, environment files, the matrix page."""
