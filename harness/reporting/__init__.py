"""Report writers: what a reviewer reads in a minute, and can drill into.

- allure_results: Allure results of lifecycle phases (the runner writes them per cell)
- enrich: environment.properties, categories.json, executor.json, harness results (per cell)
- allure_report: the Allure 3 HTML report, one environment per platform (tools/allure, npm)
- matrix_page: reports/matrix.html, matrix.md (GitHub job summary), matrix.json
- build: `mlflow-matrix report` = enrich every cell, build Allure, write the matrix page
- browser: headless Chromium (DOM dump, screenshots) for the reports' own tests
"""
