from uf_experiments.cli.app import main

if __name__ == "__main__":
    main()
