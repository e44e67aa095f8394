from jaxseg.bench.steps import main

main()
