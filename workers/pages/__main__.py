from workers.pages.app import main

main()
